"""Package metadata for bokeh-flask; build settings live in pyproject.toml."""
from setuptools import find_packages, setup

setup(
    name="bokeh-flask",
    version="0.1.0",
    description="Serve live Bokeh applications from a Flask blueprint on gevent: a drop-in for `bokeh serve`.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["bokeh_flask", "bokeh_flask.*"]),
    package_data={"bokeh_flask": ["web/templates/bokeh/*.html", "py.typed"]},
    python_requires=">=3.10",
    # What the package imports, with the ranges the test legs run (scripts/test). The
    # websocket transport subclasses simple-websocket's Server and drives wsproto directly,
    # so both are held to the releases it was tested with; werkzeug's reloader (--dev)
    # is a private module of werkzeug 3.x. Flask 3.1 is the first with TRUSTED_HOSTS (the
    # same-origin rule relies on it); gevent 26.5 the first that exits cleanly with greenlet 3.5.1+.
    install_requires=[
        "bokeh>=3.6",
        "flask>=3.1",
        "werkzeug>=3.1,<4",
        "jinja2>=3.1.2",
        "itsdangerous>=2.2",
        "markupsafe>=2.1",
        "tornado>=6.2",
        "gevent>=26.5",
        "gunicorn>=21.2",
        "simple-websocket>=1.1,<1.2",
        "wsproto>=1.2,<2",
    ],
    extras_require={
        "test": [
            "pytest>=7.4",
            "pytest-timeout>=2.2",
            "playwright>=1.40",
            "websocket-client>=1.6",
            "nbconvert>=7",
            "psutil>=5.9",
            "hypothesis>=6.100",
            "import-linter>=2.1",
            "redis>=5",
        ],
        # the Redis document store (--backend redis)
        "redis": ["redis>=5"],
    },
    entry_points={"console_scripts": ["bokeh-flask = bokeh_flask.runtime.cli:main"]},
    license_expression="BSD-3-Clause",
    license_files=["LICENSE"],
    classifiers=[
        "Framework :: Flask",
        "Programming Language :: Python :: 3",
    ],
)
