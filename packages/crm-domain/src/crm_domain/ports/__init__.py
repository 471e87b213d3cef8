"""Ports: the Protocols adapters implement."""

from crm_domain.ports.ai import AIProvider
from crm_domain.ports.analytics import Dimension, Metric, MetricQuery, MetricRow
from crm_domain.ports.clock import Clock, IdFactory
from crm_domain.ports.gateway import DatabaseGateway, UnitOfWork
from crm_domain.ports.messaging import Mailer, OutgoingEmail, OutgoingSms, SendResult, SmsSender
from crm_domain.ports.queue import QueueGateway

__all__ = [
    "AIProvider",
    "Clock",
    "DatabaseGateway",
    "Dimension",
    "IdFactory",
    "Mailer",
    "Metric",
    "MetricQuery",
    "MetricRow",
    "OutgoingEmail",
    "OutgoingSms",
    "QueueGateway",
    "SendResult",
    "SmsSender",
    "UnitOfWork",
]
