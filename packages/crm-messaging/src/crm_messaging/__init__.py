"""Mailers (SMTP, Gmail API) and SMS senders (ClickSend, MessageMedia) for the Avatar Imaging CRM."""
