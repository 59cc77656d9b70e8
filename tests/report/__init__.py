"""Tests of dhkd.report (a package, so its conftest and helpers never shadow other folders')."""
