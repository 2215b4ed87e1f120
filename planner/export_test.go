package planner

// SetCatalogInlineLimit changes the inline limit for a test and returns a
// function that restores it.
func SetCatalogInlineLimit(n int) func() {
	old := catalogInlineLimit
	catalogInlineLimit = n
	return func() { catalogInlineLimit = old }
}
