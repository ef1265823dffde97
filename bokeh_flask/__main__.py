"""``python -m bokeh_flask`` is the ``bokeh-flask`` command."""
from bokeh_flask.runtime.cli import main

if __name__ == "__main__":
    main()
