"""The browser fixtures (``browser``, ``page``, ``console``) are in
``tests/support/browser.py``, a plugin that ``tests/conftest.py`` loads for the
whole suite, so browser tests outside this directory share the same browser.
"""
