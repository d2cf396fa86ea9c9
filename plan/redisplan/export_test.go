package redisplan

// WithoutBakedScripts makes d run only the scripts that take their
// constants as arguments, as it does once it has generated
// maxBakedScripts scripts.
func WithoutBakedScripts(d *Decider) *Decider {
	d.maxBaked = 0
	return d
}
