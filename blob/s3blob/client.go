package s3blob

import "github.com/aws/aws-sdk-go-v2/service/s3"

// Client returns the store's S3 client, Bucket its bucket and Prefix its
// key prefix: for other users of the same bucket, such as the tus upload
// store (media/upload), which keeps its data under Prefix + "uploads/".
func (s *Store) Client() *s3.Client { return s.client }

// Bucket returns the store's bucket (see Client).
func (s *Store) Bucket() string { return s.bucket }

// Prefix returns the store's key prefix, "" or ending in '/' (see Client).
func (s *Store) Prefix() string { return s.prefix }
