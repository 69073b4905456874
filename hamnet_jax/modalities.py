"""The four modalities, in the order every array, mask and token uses (shared by data and models)."""

MODALITIES: tuple[str, ...] = ("clinical", "imaging", "genetic", "lifestyle")
