// Stand-in for github.com/projectcalico/calico/lib/httpmachinery: calico's go.mod requires it at a
// placeholder version with a local-path replace that its module zip omits. None of the packages
// anvil.cluster builds (calico-node, the CNI plugin, kube-controllers, typha) imports it, so an empty
// module satisfies the module graph. A build that did import it would fail to compile, loudly.
module github.com/projectcalico/calico/lib/httpmachinery

go 1.24
