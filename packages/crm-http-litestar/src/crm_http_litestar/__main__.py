"""``python -m crm_http_litestar`` runs the ``crm`` command."""

from crm_http_litestar.cli import main

main()
