"""LoadCheck: the candidate loaded by a model server in a child process and called on every serving
signature over REST and gRPC before any version is listed (InfraValidator's job, without Docker).

Entry point: ``LoadCheck`` (``component``); the requests are built by ``requests``, the check itself
(child server, replay, latency budget) is ``check``, a plain module tested without TFX.
"""
