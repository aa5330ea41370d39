module grader.invalid/e2e/control-plane/pause

go 1.24.0
