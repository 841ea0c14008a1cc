"""``seedvr2 serve``: a web page and an HTTP API (``/restore``) over the pipeline's file jobs.

Gradio is imported only when the server starts (:func:`serve`), so the rest of the package and
the CLI work without the ``serve`` extra.
"""

from .server import ServeOptions, serve

__all__ = ["ServeOptions", "serve"]
