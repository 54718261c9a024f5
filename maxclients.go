package realtime

// maxClientsFor is the default max_clients under an open-file limit: a tenth
// of it (at least 256) is kept for everything that is not a stream.
func maxClientsFor(fileLimit int) int {
	headroom := max(256, fileLimit/10)
	if fileLimit <= headroom {
		return 1
	}
	return fileLimit - headroom
}
