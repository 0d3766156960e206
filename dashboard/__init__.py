"""Panel UI: pages, view-models, browser components and REST handlers. Calls engine services only."""
