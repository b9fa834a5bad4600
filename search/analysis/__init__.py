"""Analysis of a finished or running study: the HTML report and the test-split evaluation."""
