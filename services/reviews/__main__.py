"""``python -m services.reviews``: serve the reviews service with uvicorn (uvloop + httptools)."""

from services.common.serve import serve

if __name__ == "__main__":
    serve("reviews")
