package app

// PagesPerMinute is pagesPerMinute, for the tests of package app_test.
const PagesPerMinute = pagesPerMinute
