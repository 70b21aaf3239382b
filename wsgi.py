"""The entry point of the demo shop (the ``demo`` package), or of a site configured by its
``.env`` (see docs/deployment.md):

    flask --app wsgi run                           # development server, embedded SQLite
    gunicorn -c gunicorn.conf.py 'wsgi:create_app()'  # production-style
"""

from demo import create_app

__all__ = ["create_app"]
