"""Homology search against annotated reference sequences.

Takes sequence records and a reference set and gives alignment hits (reference id,
description, identity, coverage, bit score, E-value): the evidence shown in every output
row and read by the LLM.
"""
