"""The petition service (issue 12): the authenticated HTTP front door for intake systems,
staff and petitioners. `service.app.create_app` builds it; `service.main:app_factory` is
the uvicorn factory."""
