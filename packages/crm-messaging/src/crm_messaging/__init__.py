"""Mailers and SMS senders for the Avatar Imaging CRM (not built yet: see the README)."""
