"""Stage 4 of the flow (data -> pipeline -> push -> config -> **model server** -> router -> controller).

The embedded model server: tensorflow_model_server's flags (``options``), config files (``configs``),
model manager (``manager``), REST (``rest``, ``rest_aio``, ``rest_json``) and gRPC (``grpc_service``)
APIs over one inference core (``inference``), batching and monitoring. Entry points: ``ModelServer``
(``server``) and ``tfx-canary serve`` (``cli``). It imports nothing from the other stages.
"""
