// Package v20170312 is a stand-in for the TencentCloud VPC API client (see ../../README.md):
// the types flannel's tencentvpc backend uses, and a client whose calls all fail.
package v20170312

import "errors"

// ErrNotIncluded is returned by every API call of this stand-in.
var ErrNotIncluded = errors.New("the TencentCloud VPC backend is not included in this flannel build " +
	"(built from source without the TencentCloud SDK); use the vxlan, host-gw or wireguard backend")

type Filter struct {
	Name   *string
	Values []*string
}

type Route struct {
	DestinationCidrBlock *string
	GatewayType          *string
	GatewayId            *string
	RouteId              *uint64
	RouteDescription     *string
	Enabled              *bool
	RouteType            *string
	RouteTableId         *string
}

type RouteTable struct {
	VpcId          *string
	RouteTableId   *string
	RouteTableName *string
	RouteSet       []*Route
}

type DescribeRouteTablesRequest struct {
	Filters       []*Filter
	RouteTableIds []*string
}

type DescribeRouteTablesResponse struct {
	Response *struct {
		TotalCount    *uint64
		RouteTableSet []*RouteTable
		RequestId     *string
	}
}

type CreateRoutesRequest struct {
	RouteTableId *string
	Routes       []*Route
}

type CreateRoutesResponse struct{}

type DeleteRoutesRequest struct {
	RouteTableId *string
	Routes       []*Route
}

type DeleteRoutesResponse struct{}

func NewDescribeRouteTablesRequest() *DescribeRouteTablesRequest {
	return &DescribeRouteTablesRequest{}
}
func NewCreateRoutesRequest() *CreateRoutesRequest { return &CreateRoutesRequest{} }
func NewDeleteRoutesRequest() *DeleteRoutesRequest { return &DeleteRoutesRequest{} }

// Client is the VPC API client.
type Client struct{}

// NewClientWithSecretId returns a client; every call on it fails with ErrNotIncluded.
func NewClientWithSecretId(secretID, secretKey, region string) (*Client, error) {
	return &Client{}, nil
}

func (c *Client) DescribeRouteTables(*DescribeRouteTablesRequest) (*DescribeRouteTablesResponse, error) {
	return nil, ErrNotIncluded
}

func (c *Client) CreateRoutes(*CreateRoutesRequest) (*CreateRoutesResponse, error) {
	return nil, ErrNotIncluded
}

func (c *Client) DeleteRoutes(*DeleteRoutesRequest) (*DeleteRoutesResponse, error) {
	return nil, ErrNotIncluded
}
