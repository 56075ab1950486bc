"""JSON Schemas of loadgen's output files, shipped as package data.

report.schema.json    report.json; generated from loadgen.analysis.report_types (do not edit by hand)
requests.schema.json  one line of requests.jsonl (RequestRecord.to_json), written by hand

Both belong to report_types.SCHEMA_VERSION: tests/unit/analysis/test_report_schema.py pins their
hash per version, so changing either means a new version.
"""

__all__: list[str] = []
