// Package errors is a stand-in for the TencentCloud SDK's errors package (see ../../README.md).
package errors

import "fmt"

// TencentCloudSDKError is the SDK's API error type.
type TencentCloudSDKError struct {
	Code      string
	Message   string
	RequestId string
}

func (e *TencentCloudSDKError) Error() string {
	return fmt.Sprintf("[TencentCloudSDKError] Code=%s, Message=%s, RequestId=%s", e.Code, e.Message, e.RequestId)
}
