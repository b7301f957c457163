"""The monolith's tables as the Python code outside Django reads and writes them (SQLAlchemy Core).

Shared by the services and the events code, which may not import each other's internals; it imports
no backend (an import-linter contract). The monolith's migrations own the schema (ADR 0001).
"""
