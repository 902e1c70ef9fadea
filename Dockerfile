# The posevit server (page + JSON API + metrics) serving a published model from an S3 registry.
#   docker build -t posevit-app .                     (--build-arg BASE=<image> for another Python 3.11 base)
#   docker run -p 127.0.0.1:7860:7860 -e POSEVIT_MODEL=s3://BUCKET/PREFIX/NAME:latest \
#       -e AWS_ACCESS_KEY_ID -e AWS_SECRET_ACCESS_KEY -e AWS_REGION [-e AWS_ENDPOINT_URL_S3] posevit-app
# The model is a registry URI (s3://BUCKET/PREFIX/NAME:latest, or @VERSION to pin one); the S3 endpoint, region
# and credentials come from the AWS chain. By default the image installs posevit[serve] from its lock
# (requirements/serve.txt: ONNX Runtime and OpenVINO (~180 MB of it), no PyTorch) and serves the NNCF static int8
# OpenVINO IR, the fastest export that passes the export stage's parity gates (docs/deployment.md has the figures);
# --build-arg BACKEND=onnx-int8 (or POSEVIT_BACKEND at run time) serves ONNX Runtime's dynamic int8 instead.
# For the torch backend and the page's heat maps, install posevit[serve,torch] (~7 GB, CUDA included):
#   docker build --build-arg EXTRAS=serve,torch --build-arg REQUIREMENTS=requirements/runtime.txt \
#       --build-arg BACKEND=torch -t posevit-app:torch .
ARG BASE=python:3.11-slim
FROM ${BASE}
ARG REQUIREMENTS=requirements/serve.txt
ARG EXTRAS=serve
ARG BACKEND=openvino-int8

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    GRADIO_ANALYTICS_ENABLED=False
WORKDIR /app

# Dependency layer: rebuilt only when the lock changes, not on every code edit.
COPY ${REQUIREMENTS} requirements.txt
RUN python3 -m venv /opt/venv && /opt/venv/bin/pip install -r requirements.txt
ENV PATH=/opt/venv/bin:$PATH

# The project with its extras, held to the same lock (pip checks that every dependency is there at those versions).
COPY pyproject.toml README.md ./
COPY src/ src/
RUN pip install -c requirements.txt ".[${EXTRAS}]" && rm -rf src && useradd --create-home --uid 10001 posevit
# `python app.py` is `posevit serve` (kept for the HEALTHCHECK and old habits).
COPY app.py ./

USER posevit
# Inside a container the server must listen on all interfaces; publish the port on 127.0.0.1 (compose does).
ENV POSEVIT_HOST=0.0.0.0 POSEVIT_PORT=7860 POSEVIT_MODEL=s3://posevit-models/registry/posevit:latest \
    POSEVIT_BACKEND=${BACKEND} POSEVIT_CACHE=/home/posevit/.cache/posevit
EXPOSE 7860
# Ready = the model is loaded and warmed up (GET /health/ready).
HEALTHCHECK --interval=30s --timeout=10s --start-period=120s --retries=3 CMD ["python", "app.py", "--healthcheck"]
CMD ["python", "app.py"]
