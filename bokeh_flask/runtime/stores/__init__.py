"""Document stores that do I/O: the file store (``--backend shelve``) and, to come, Redis."""
