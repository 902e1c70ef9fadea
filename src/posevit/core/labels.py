"""The 15 action classes, in the order of the hub dataset's ``labels`` ClassLabel."""

ACTION_CLASSES: tuple[str, ...] = (
    "calling",
    "clapping",
    "cycling",
    "dancing",
    "drinking",
    "eating",
    "fighting",
    "hugging",
    "laughing",
    "listening_to_music",
    "running",
    "sitting",
    "sleeping",
    "texting",
    "using_laptop",
)
