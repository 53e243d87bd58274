"""The HTTP floor every protocol adapter and the gateway stand on.

Bodies (bounded, decompressed, gzipped answers), error bodies per protocol,
request deadlines, the caller's place in the scope, and the one route table.
"""
