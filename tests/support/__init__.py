"""Helpers the tests share: apps and webhook calls, captured logs, and local stand-ins
for what lies outside this machine (PostgreSQL servers, Raptor's APIs, browsers)."""
