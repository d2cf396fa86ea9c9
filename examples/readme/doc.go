// Package readme holds the code blocks of apikit's README as compiled,
// runnable Examples: each ```go block of the README is a part of one of
// them, and TestReadmeBlocksCompile fails when the two drift apart.
package readme
