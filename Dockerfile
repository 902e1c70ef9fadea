# The posevit app serving a published model from the S3 registry.
#   docker build -t posevit-app .
#   docker run -p 127.0.0.1:7860:7860 -e AWS_ACCESS_KEY_ID -e AWS_SECRET_ACCESS_KEY -e AWS_REGION posevit-app
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    GRADIO_ANALYTICS_ENABLED=False
WORKDIR /app

# Dependency layer: rebuilt only when the runtime lock changes, not on every code edit.
COPY requirements/runtime.txt requirements/runtime.txt
RUN pip install -r requirements/runtime.txt

COPY pyproject.toml README.md ./
COPY src/ src/
RUN pip install --no-deps . && useradd --create-home --uid 10001 posevit
# params.yaml says where the registry is (push.bucket, prefix, model_name, endpoint_url).
COPY app.py params.yaml ./

USER posevit
# Inside a container the app must listen on all interfaces; publish the port on 127.0.0.1 (compose does).
ENV POSEVIT_HOST=0.0.0.0 POSEVIT_PORT=7860 POSEVIT_MODEL=registry POSEVIT_CACHE=/home/posevit/.cache/posevit
EXPOSE 7860
HEALTHCHECK --interval=30s --timeout=10s --start-period=120s --retries=3 CMD ["python", "app.py", "--healthcheck"]
CMD ["python", "app.py"]
