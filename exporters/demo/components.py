"""Patch 10 of the AWS emulator (see patches.py): SageMaker inference components, which moto 5.2.5 lacks.

Inference components are how several models share an endpoint's instances (the way LLMs are deployed on
SageMaker today). moto answers every inference-component operation with an error. This adds, per account and
region (moto's backend), what MLScope and its demo use, with the shapes of the SageMaker API reference:

- CreateInferenceComponent (InferenceComponentName, EndpointName, VariantName, Specification with
  ComputeResourceRequirements, RuntimeConfig.CopyCount, Tags): the endpoint must exist (ValidationException
  "Could not find endpoint" otherwise, as SageMaker answers) and the name must be new; it is InService at once.
- DescribeInferenceComponent: RuntimeConfig {DesiredCopyCount, CurrentCopyCount}, Specification as given,
  InferenceComponentStatus, CreationTime, LastModifiedTime, ARNs.
- ListInferenceComponents: filters EndpointNameEquals, VariantNameEquals, StatusEquals, NameContains;
  MaxResults (default 10, as SageMaker) and NextToken; newest first (SortBy CreationTime, Descending).
- UpdateInferenceComponentRuntimeConfig (DesiredRuntimeConfig.CopyCount): the new copy count applies at once.
- DeleteInferenceComponent.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from moto.core.responses import ActionResult, EmptyResult
from moto.sagemaker import responses as sm_responses
from moto.sagemaker.exceptions import ValidationError


def _store(backend: Any) -> dict[str, dict]:
    return backend.__dict__.setdefault("_mlscope_inference_components", {})


def _not_found(backend: Any, name: str) -> ValidationError:
    arn = f"arn:aws:sagemaker:{backend.region_name}:{backend.account_id}:inference-component/{name}"
    return ValidationError(message=f"Could not find inference component '{arn}'.")


def _get(backend: Any, name: str) -> dict:
    try:
        return _store(backend)[name]
    except KeyError:
        raise _not_found(backend, name) from None


def create_inference_component(self: Any) -> ActionResult:
    backend = self.sagemaker_backend
    name = self._get_param("InferenceComponentName")
    endpoint_name = self._get_param("EndpointName")
    endpoint = backend.describe_endpoint(endpoint_name)  # raises "Could not find endpoint" like SageMaker
    if name in _store(backend):
        raise ValidationError(message=f"Cannot create already existing inference component \"{name}\".")
    variant = self._get_param("VariantName")
    if variant not in {v["VariantName"] for v in endpoint.get("ProductionVariants", [])}:
        raise ValidationError(message=f"Could not find variant '{variant}' of endpoint '{endpoint_name}'.")
    copies = int((self._get_param("RuntimeConfig") or {}).get("CopyCount", 1))
    now = dt.datetime.now(dt.timezone.utc)
    arn = f"arn:aws:sagemaker:{backend.region_name}:{backend.account_id}:inference-component/{name}"
    _store(backend)[name] = {
        "InferenceComponentName": name, "InferenceComponentArn": arn, "EndpointName": endpoint_name,
        "EndpointArn": endpoint["EndpointArn"], "VariantName": variant,
        "Specification": self._get_param("Specification") or {},
        "RuntimeConfig": {"DesiredCopyCount": copies, "CurrentCopyCount": copies},
        "InferenceComponentStatus": "InService", "CreationTime": now, "LastModifiedTime": now,
    }
    return ActionResult({"InferenceComponentArn": arn})


def describe_inference_component(self: Any) -> ActionResult:
    return ActionResult(dict(_get(self.sagemaker_backend, self._get_param("InferenceComponentName"))))


def list_inference_components(self: Any) -> ActionResult:
    wanted = {"EndpointName": self._get_param("EndpointNameEquals"), "VariantName": self._get_param("VariantNameEquals"),
              "InferenceComponentStatus": self._get_param("StatusEquals")}
    contains = self._get_param("NameContains")
    found = [c for c in _store(self.sagemaker_backend).values()
             if all(v is None or c[k] == v for k, v in wanted.items())
             and (not contains or contains in c["InferenceComponentName"])]
    found.sort(key=lambda c: (c["CreationTime"], c["InferenceComponentName"]), reverse=True)
    start = int(self._get_param("NextToken") or 0)
    size = int(self._get_param("MaxResults") or 10)
    page = found[start:start + size]
    keys = ("InferenceComponentName", "InferenceComponentArn", "EndpointName", "EndpointArn", "VariantName",
            "InferenceComponentStatus", "CreationTime", "LastModifiedTime")
    result: dict[str, Any] = {"InferenceComponents": [{k: c[k] for k in keys} for c in page]}
    if start + size < len(found):
        result["NextToken"] = str(start + size)
    return ActionResult(result)


def update_inference_component_runtime_config(self: Any) -> ActionResult:
    component = _get(self.sagemaker_backend, self._get_param("InferenceComponentName"))
    copies = int((self._get_param("DesiredRuntimeConfig") or {}).get("CopyCount", 1))
    component["RuntimeConfig"] = {"DesiredCopyCount": copies, "CurrentCopyCount": copies}
    component["LastModifiedTime"] = dt.datetime.now(dt.timezone.utc)
    return ActionResult({"InferenceComponentArn": component["InferenceComponentArn"]})


def delete_inference_component(self: Any) -> EmptyResult:
    backend = self.sagemaker_backend
    name = self._get_param("InferenceComponentName")
    _get(backend, name)
    del _store(backend)[name]
    return EmptyResult()


def targets() -> list[tuple[type, str, Any]]:
    """(owner, attribute, patch) for patches.apply(), which installs them and puts moto back on undo()."""
    return [(sm_responses.SageMakerResponse, handler.__name__, handler)
            for handler in (create_inference_component, describe_inference_component, list_inference_components,
                            update_inference_component_runtime_config, delete_inference_component)]
