"""The BentoML service that answers HTTP requests with the core's preprocessing and model (``service.py``)."""
