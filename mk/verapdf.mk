# veraPDF, the reference PDF/A validator, for the PDF/A tests (pytest marker `pdfa`): its jars
# from Maven Central into $(MOODLE_ARCHIVER_CACHE_DIR)/verapdf (Java and Maven: make setup).
.PHONY: verapdf
verapdf: setup ## veraPDF (PDF/A validator) from Maven Central into the cache, for the pdfa tests
	@$(PY) -m tests.support.verapdf install
