"""The HTTP gateway: every deployment as REST, Open Inference Protocol v2 and OpenAI endpoints.

One process per daemon, which starts and supervises it (``python -m jupyter_deploy.gateway``;
see ``control._gateway``); ``Client().gateway_url`` and ``jupyter-deploy status`` give its
address. It authenticates callers with their personal access tokens, resolves their routes
through the daemon like the Python client (cached, renewed before the token lapses) and calls
the runners directly over gRPC, so the daemon stays off the hot path.

Nothing here is imported by ``import jupyter_deploy``; the modules are private. See the README
section "HTTP endpoints" for the paths and their JSON.
"""
