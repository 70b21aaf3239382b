"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}

Rolling deploy: say whether code of the previous version keeps working on this schema
(an expand step) or must be gone before it runs (a contract step).
"""

import sqlalchemy as sa
from alembic import op

revision = ${repr(up_revision)}
down_revision = ${repr(down_revision)}
branch_labels = None
depends_on = None


def upgrade() -> None:
    ${upgrades if upgrades else "pass"}


def downgrade() -> None:
    ${downgrades if downgrades else "pass"}
