"""The HTTP service over ``classifier/``; ``serve.py`` is its entry point.

One concern per module:

- ``settings``: ``HOTLINE_*`` environment settings, unsafe combinations refused
- ``auth``: API-key checks for the routes; keys too weak to accept
- ``loading``: load, verify and warm a store version; the holder that swaps it on reload
- ``worker_versions``: which version each worker serves and which one the service switched to
- ``schemas``: request and response bodies
- ``predicting``: texts to response records (input checks, refused items, coalescing of single requests)
- ``hints``: place hints the model cannot use, reported in the response
- ``middleware``: request log, request ids, latency
- ``limits``: the body-size limit, the header and body deadlines
- ``errors``: readable error bodies
- ``metrics``: Prometheus metrics
- ``model_info``: what ``GET /model`` says
- ``app``: the FastAPI app and its routes
- ``runner``: start-up, workers, the command line
"""
