"""imagegen: the example command-line client of the image pipeline bundle.

``imagegen generate "a red fox in snow"`` submits a task to the bundle's API, follows it with a
progress bar and downloads the stored images (checking their sha256); ``imagegen status TASK_ID``
shows where a task stands. :mod:`imagegen.api` is the reusable, typed HTTP client.
"""

__version__ = "0.1.0"
