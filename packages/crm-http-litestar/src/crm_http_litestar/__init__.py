"""Litestar HTTP server, security pipeline, webhooks and the crm CLI for the Avatar Imaging CRM."""
