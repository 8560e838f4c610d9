"""What the jupyter_client-compatible modules share.

``kernelwire.manager``, ``kernelwire.multikernelmanager`` and ``kernelwire.kernelspec``
subclass jupyter_client's classes (tools such as nbclient check for them with traitlets
``Type`` traits), so they need jupyter_client, installed by ``kernelwire[jupyter]``.
The rest of kernelwire does not.
"""

from __future__ import annotations

from ..errors import JupyterClientMissing

__all__ = ["JupyterClientMissing", "require_jupyter_client"]


def require_jupyter_client(what: str) -> None:
    """Raise :class:`JupyterClientMissing` naming ``what`` if jupyter_client is absent."""
    try:
        import jupyter_client  # noqa: F401
    except ImportError:
        raise JupyterClientMissing(
            f"{what} subclasses jupyter_client's classes (so nbclient, papermill and "
            "jupyter_server accept it) and needs jupyter_client: "
            "pip install 'kernelwire[jupyter]'"
        ) from None
