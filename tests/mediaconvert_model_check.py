#!/usr/bin/env python3
"""Checks a captured MediaConvert CreateJob request body against botocore's service model.

Usage: mediaconvert_model_check.py BODY.json   (exit 0: valid; 1: invalid, reasons printed)

1. Maps the wire JSON (restJson1 locationNames, e.g. "outputGroups") back to the model's
   member names, refusing members the model does not define and enum values it does not list.
2. Runs botocore's ParamValidator on the result (types, required members, min/max ranges).
3. Serializes those parameters with botocore's rest-json serializer and requires the body to
   equal the captured one: the Rust SDK and botocore put the same request on the wire.
"""
import json
import sys

import botocore.session
from botocore.serialize import create_serializer
from botocore.validate import ParamValidator


def main(path):
    body = json.load(open(path))
    model = botocore.session.get_session().get_service_model("mediaconvert")
    op = model.operation_model("CreateJob")
    errors = []

    def convert(value, shape, where):
        kind = shape.type_name
        if kind == "structure":
            if not isinstance(value, dict):
                errors.append(f"{where}: expected an object")
                return value
            by_wire = {m.serialization.get("name", n): (n, m) for n, m in shape.members.items()}
            out = {}
            for key, item in value.items():
                if key not in by_wire:
                    errors.append(f"{where}.{key}: not a member of {shape.name}")
                    continue
                name, member = by_wire[key]
                out[name] = convert(item, member, f"{where}.{key}")
            return out
        if kind == "list":
            return [convert(v, shape.member, f"{where}[{i}]") for i, v in enumerate(value)]
        if kind == "map":
            return {k: convert(v, shape.value, f"{where}.{k}") for k, v in value.items()}
        if kind == "string" and shape.enum and value not in shape.enum:
            errors.append(f"{where}: {value!r} is not one of {shape.name}")
        return value

    params = convert(body, op.input_shape, "CreateJob")
    report = ParamValidator().validate(params, op.input_shape)
    if report.has_errors():
        errors.append(report.generate_report())
    if not errors:
        wire = create_serializer("rest-json").serialize_to_request(params, op)
        if json.loads(wire["body"]) != body:
            errors.append("botocore serializes these parameters to a different body")
    for e in errors:
        print(e)
    print(f"{len(errors)} problem(s) in {path}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
