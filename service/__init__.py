"""The HTTP service over ``classifier/``; ``serve.py`` is its entry point.

One concern per module:

- ``settings``: ``HOTLINE_*`` environment settings, unsafe combinations refused
- ``loading``: load, verify and warm a store version; the holder that swaps it on reload
- ``schemas``: request and response bodies
- ``predicting``: texts to response records (input checks, refused items, coalescing of single requests)
- ``middleware``: request log, request ids, latency, body-size limit
- ``errors``: readable error bodies
- ``metrics``: Prometheus metrics
- ``model_info``: what ``GET /model`` says
- ``app``: the FastAPI app and its routes
- ``runner``: start-up, workers, the command line
"""
