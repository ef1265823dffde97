"""``gunicorn -k bokeh_flask.gunicorn_worker.GeventWorker``: the documented name of the worker class
(:class:`bokeh_flask.runtime.gunicorn_worker.GeventWorker`)."""
from .runtime.gunicorn_worker import GeventWorker

__all__ = ["GeventWorker"]
