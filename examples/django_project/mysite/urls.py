"""Three views: a plain Django view, a DRF view, and a health check exempt from mTLS."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.urls import path
from rest_framework.response import Response
from rest_framework.views import APIView

from mtlsauth.adapters.django import identity_from_request


def whoami(request: HttpRequest) -> JsonResponse:
    who = identity_from_request(request)  # a ClientIdentity (mandatory mode)
    return JsonResponse(
        {
            "cn": who.common_name if who else None,
            "user": request.user.get_username() if request.user.is_authenticated else None,
            "source": who.source if who else None,
        }
    )


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "up"})


class Who(APIView):
    """DRF: request.auth is the ClientIdentity, request.user the mapped Django user."""

    def get(self, request):  # type: ignore[no-untyped-def]
        return Response(
            {
                "cn": request.auth.common_name,
                "user": str(request.user),
                "source": request.auth.source,
            }
        )


urlpatterns = [
    path("whoami", whoami),
    path("healthz", healthz),
    path("api/who", Who.as_view()),
]
