"""Cloudflare D1 DatabaseGateway and Cloudflare Queues producer for the Avatar Imaging CRM."""
