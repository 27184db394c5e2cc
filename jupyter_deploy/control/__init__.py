"""The control plane daemon: registry, compute, scheduler, router.

It owns all state (SQLite and content-addressed blobs under the home folder),
starts and supervises runner processes, and resolves routes; clients then
talk to runners directly. Run it with ``jupyter-deploy serve`` (or let the
first ``Client()`` start it). It never imports model code.
"""
