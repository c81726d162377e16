"""The split rule language: versioned, declarative rulesets compiled into a fast policy.

``model`` holds the immutable rule records, ``conditions`` evaluates ``when`` trees,
``validate`` checks a ruleset before it can be used, ``engine`` compiles it into an index and
splits orders with it. Parsing from YAML/JSON is an adapter (``splitledger.rules_io``).
"""
