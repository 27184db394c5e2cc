"""Model templates that `jupyter-deploy init --template NAME` copies."""
