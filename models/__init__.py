"""Bundles shipped with seqchat (installed as the package `seqchat.bundles`)."""
