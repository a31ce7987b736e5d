"""Flotilla's microservices: the shared kit and one package per service."""
