"""Envelope encryption and the custodians that hold each region's keys."""
