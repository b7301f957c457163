"""``python -m services.recommendations``: serve the recommendations service with uvicorn."""

from services.common.serve import serve

if __name__ == "__main__":
    serve("recommendations")
