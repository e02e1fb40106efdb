"""Errors of the data layer; each message names the file or folder at fault."""


class HDMAPFileError(ValueError):
    """A map file that cannot be used; the message names the file and the problem."""


class HDMAPLayoutError(FileNotFoundError):
    """A folder of the HDMAP layout that is missing or holds no maps."""
